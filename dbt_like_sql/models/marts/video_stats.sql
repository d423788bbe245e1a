-- Per-video annotation statistics (computed from artifacts), with the video's dataset and shard.
{{ config(meta={'indexes': [['fov_x_deg'], ['dataset', 'tar_name']]}) }}
SELECT
    v.dataset,
    v.tar_name,
    v.num_frames AS expected_frames,
    s.*,
    CAST(s.width AS VARCHAR) || 'x' || CAST(s.height AS VARCHAR) AS resolution
FROM {{ ref('stg_video_stats') }} AS s
LEFT JOIN {{ ref('videos') }} AS v ON v.sequence = s.sequence
