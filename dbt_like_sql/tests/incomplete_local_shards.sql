-- Shards extracted locally with fewer sequences than meta.parquet lists (known: wsdg-a2de74e8/pose.tar, #46).
{{ config(severity='warn') }}
SELECT dataset, tar_name, attribute, local_sequences, videos
FROM {{ ref('shards') }}
WHERE local_status = 'incomplete'
