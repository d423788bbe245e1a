-- Files found under the artifact roots (ViPE layout).
SELECT root, sequence, attribute, path, format, CAST(bytes AS BIGINT) AS bytes, mtime, recorded_sha256, tar_name
FROM {{ source('catalog_raw', 'artifacts') }}
