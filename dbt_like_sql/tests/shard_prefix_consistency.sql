-- Every released video's shard is named <dataset prefix>-<8 hex digits>.
{{ config(meta={'dagster': {'ref': {'name': 'videos'}}}) }}
SELECT v.dataset, v.tar_name, d.prefix, count(*) AS videos
FROM {{ ref('videos') }} AS v
JOIN {{ ref('datasets') }} AS d ON d.name = v.dataset
WHERE v.dataset <> 'local'
  AND (
      v.tar_name IS NULL
      OR NOT regexp_full_match(v.tar_name, '[a-z0-9]{4}-[0-9a-f]{8}')
      OR (d.prefix IS NOT NULL AND split_part(v.tar_name, '-', 1) <> d.prefix)
  )
GROUP BY v.dataset, v.tar_name, d.prefix
