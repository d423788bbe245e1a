-- meta.parquet rows of every source, one per released video.
SELECT
    trim(CAST(sequence AS VARCHAR)) AS sequence,
    dataset,
    trim(tar_name) AS tar_name,
    split_part(tar_name, '-', 1) AS tar_prefix,
    CAST(num_frames AS INTEGER) AS num_frames,
    nullif(trim(youtube_link), '') AS youtube_link,
    nullif(trim(youtube_timestamp), '') AS youtube_timestamp
FROM {{ source('catalog_raw', 'meta') }}
