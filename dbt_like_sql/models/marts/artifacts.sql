-- Files that exist locally, with their frame count, whether they validated and whether they disagree
-- with the expected frame count of meta.parquet.
{{ config(meta={'indexes': [['sequence']]}) }}
WITH a AS (
    SELECT
        a.root, a.sequence, a.attribute, a.path, a.format, a.bytes, a.recorded_sha256,
        a.tar_name AS extracted_from,
        CASE a.attribute
            WHEN 'pose' THEN s.pose_frames
            WHEN 'intrinsics' THEN s.intrinsics_frames
            WHEN 'camera' THEN s.intrinsics_frames
            WHEN 'depth' THEN s.depth_frames
            WHEN 'rgb' THEN s.rgb_frames
            WHEN 'mask' THEN s.mask_frames
        END AS frame_count,
        CASE a.attribute
            WHEN 'pose' THEN s.pose_valid
            WHEN 'intrinsics' THEN s.intrinsics_valid
            WHEN 'camera' THEN s.intrinsics_valid
            WHEN 'depth' THEN s.depth_valid
            WHEN 'rgb' THEN s.rgb_valid
            WHEN 'mask' THEN s.mask_valid
        END AS validated,
        s.frame_counts_agree,
        s.generation,
        s.generation_ok
    FROM {{ ref('stg_artifacts') }} AS a
    LEFT JOIN {{ ref('stg_video_stats') }} AS s ON s.root = a.root AND s.sequence = a.sequence
)
SELECT
    a.root,
    a.sequence,
    v.dataset,
    coalesce(a.extracted_from, v.tar_name) AS tar_name,
    a.attribute,
    a.path,
    a.format,
    a.bytes,
    a.frame_count,
    a.validated,
    a.recorded_sha256 IS NOT NULL AS checksum_recorded,
    a.recorded_sha256,
    v.num_frames AS expected_frames,
    coalesce(v.dataset <> 'local' AND a.frame_count IS NOT NULL AND a.frame_count <> v.num_frames, false)
        AS frame_mismatch,
    a.frame_counts_agree,
    a.generation,
    a.generation_ok
FROM a
LEFT JOIN {{ ref('videos') }} AS v ON v.sequence = a.sequence
