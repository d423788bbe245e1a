-- Shards extracted locally (from each artifact root's .vipe_download_state.json).
SELECT
    root,
    tar_name,
    attribute,
    remote,
    tar_sha256,
    CAST(bytes AS BIGINT) AS bytes,
    CAST(files AS INTEGER) AS files,
    CAST(expected_sequences AS INTEGER) AS expected_sequences,
    CAST(sequences_found AS INTEGER) AS sequences_found,
    coalesce(complete, false) AS complete,
    extracted,
    data_version
FROM {{ source('catalog_raw', 'local_shards') }}
