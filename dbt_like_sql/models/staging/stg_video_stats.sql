-- Per-video statistics computed in Python from the artifacts (vipe_dagster.catalog.stats).
SELECT * EXCLUDE (fingerprint)
FROM {{ source('catalog_raw', 'video_stats') }}
