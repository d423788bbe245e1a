-- Per-video annotation statistics (computed from artifacts), with the video's dataset and shard.
-- index: fov_x_deg
-- index: dataset, tar_name
-- test: not_null(root, sequence)
-- test: unique(root, sequence)
-- test: accepted_range(fov_x_deg, 0, 360)
-- test: accepted_range(fov_y_deg, 0, 360)
-- test: accepted_range(invalid_depth_fraction, 0, 1)
SELECT
    v.dataset,
    v.tar_name,
    v.num_frames AS expected_frames,
    s.*,
    CAST(s.width AS VARCHAR) || 'x' || CAST(s.height AS VARCHAR) AS resolution
FROM {{ ref('stg_video_stats') }} AS s
LEFT JOIN {{ ref('videos') }} AS v ON v.sequence = s.sequence
