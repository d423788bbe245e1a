-- Released datasets (registry facts) and the sources they were read from at build time.
SELECT
    name,
    title,
    hf_repo,
    prefix,
    license,
    source_uri,
    source_kind,
    data_version,
    CAST(expected_videos AS BIGINT) AS expected_videos,
    CAST(expected_frames AS BIGINT) AS expected_frames,
    CAST(num_frames_min AS INTEGER) AS num_frames_min,
    CAST(num_frames_max AS INTEGER) AS num_frames_max,
    CAST(rgb_hosted AS BOOLEAN) AS rgb_hosted
FROM {{ source('catalog_raw', 'datasets') }}
