-- Released datasets (plus 'local' for our own outputs) with counts from the catalog.
WITH ds AS (
    SELECT * FROM {{ ref('stg_datasets') }}
    UNION ALL BY NAME
    SELECT 'local' AS name, 'Local ViPE-format outputs' AS title
),
counts AS (
    SELECT
        dataset,
        count(*) AS videos,
        sum(num_frames) AS frames,
        count(DISTINCT tar_name) AS shards,
        count(*) FILTER (WHERE has_pose OR has_depth OR has_rgb OR has_intrinsics) AS videos_local
    FROM {{ ref('videos') }}
    GROUP BY dataset
)
SELECT
    ds.name, ds.title, ds.hf_repo, ds.prefix, ds.license, ds.source_uri, ds.source_kind, ds.data_version,
    ds.expected_videos, ds.expected_frames, ds.num_frames_min, ds.num_frames_max, ds.rgb_hosted,
    coalesce(c.videos, 0) AS videos,
    coalesce(c.frames, 0) AS frames,
    coalesce(c.shards, 0) AS shards,
    coalesce(c.videos_local, 0) AS videos_local
FROM ds
LEFT JOIN counts AS c ON c.dataset = ds.name
