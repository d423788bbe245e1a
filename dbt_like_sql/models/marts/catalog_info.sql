-- One row: when and from what this catalog was built, with the row count of every mart.
SELECT
    b.build_id,
    b.built_at,
    b.code_version,
    (SELECT count(*) FROM {{ ref('datasets') }}) AS datasets,
    (SELECT count(*) FROM {{ ref('shards') }}) AS shards,
    (SELECT count(*) FROM {{ ref('videos') }}) AS videos,
    (SELECT count(*) FROM {{ ref('artifacts') }}) AS artifacts,
    (SELECT count(*) FROM {{ ref('video_stats') }}) AS video_stats,
    (SELECT count(*) FROM {{ ref('lineage') }}) AS lineage
FROM {{ ref('stg_build') }} AS b
