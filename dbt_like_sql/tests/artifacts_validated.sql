-- severity: warn
-- Local artifacts that exist but failed structural validation.
SELECT root, sequence, attribute, path
FROM {{ ref('artifacts') }}
WHERE validated = false
