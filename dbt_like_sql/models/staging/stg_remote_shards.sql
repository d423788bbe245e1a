-- payload/<tar_name>/<attribute>.tar files listed on each source.
SELECT dataset, tar_name, attribute, path AS remote_path, CAST(bytes AS BIGINT) AS remote_bytes
FROM {{ source('catalog_raw', 'remote_shards') }}
