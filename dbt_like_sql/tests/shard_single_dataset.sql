-- A shard belongs to exactly one dataset.
SELECT tar_name, count(DISTINCT dataset) AS datasets
FROM {{ ref('videos') }}
WHERE tar_name IS NOT NULL
GROUP BY tar_name
HAVING count(DISTINCT dataset) > 1
