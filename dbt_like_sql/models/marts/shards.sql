-- One row per shard and attribute: remote tar (path, bytes), videos it should hold, local extraction status,
-- and the frames counted in the extracted files (local_frames) against meta.parquet (frames).
{{ config(meta={'indexes': [['dataset', 'tar_name']]}) }}
WITH per_shard AS (
    SELECT dataset, tar_name, count(*) AS videos, sum(num_frames) AS frames
    FROM {{ ref('stg_meta') }}
    GROUP BY dataset, tar_name
),
attrs AS (
    SELECT unnest(['rgb', 'depth', 'intrinsics', 'pose']) AS attribute
),
local_state AS (
    SELECT
        tar_name, attribute,
        min(root) AS local_root,
        min(tar_sha256) AS checksum,
        bool_and(complete) AS complete,
        max(files) AS member_count,
        max(sequences_found) AS local_sequences,
        max(extracted) AS extracted_at
    FROM {{ ref('stg_local_shards') }}
    GROUP BY tar_name, attribute
),
local_counts AS (
    SELECT
        tar_name, CASE attribute WHEN 'camera' THEN 'intrinsics' ELSE attribute END AS attribute,
        sum(frame_count) FILTER (WHERE attribute <> 'camera') AS local_frames,
        count(DISTINCT sequence) FILTER (WHERE frame_mismatch) AS videos_frame_mismatch,
        count(DISTINCT sequence) FILTER (WHERE NOT coalesce(frame_counts_agree, true)) AS videos_counts_disagree
    FROM {{ ref('artifacts') }}
    WHERE tar_name IS NOT NULL
    GROUP BY 1, 2
)
SELECT
    p.dataset,
    p.tar_name,
    a.attribute,
    p.videos,
    p.frames,
    r.remote_path,
    r.remote_bytes,
    r.remote_path IS NOT NULL AS remote_exists,
    CASE WHEN l.tar_name IS NULL THEN 'absent' WHEN l.complete THEN 'complete' ELSE 'incomplete' END AS local_status,
    l.local_root,
    l.checksum,
    l.member_count,
    l.local_sequences,
    l.extracted_at,
    c.local_frames,
    coalesce(c.videos_frame_mismatch, 0) AS videos_frame_mismatch,
    coalesce(c.videos_counts_disagree, 0) AS videos_counts_disagree
FROM per_shard AS p
CROSS JOIN attrs AS a
LEFT JOIN {{ ref('stg_remote_shards') }} AS r
    ON r.dataset = p.dataset AND r.tar_name = p.tar_name AND r.attribute = a.attribute
LEFT JOIN local_state AS l ON l.tar_name = p.tar_name AND l.attribute = a.attribute
LEFT JOIN local_counts AS c ON c.tar_name = p.tar_name AND c.attribute = a.attribute
