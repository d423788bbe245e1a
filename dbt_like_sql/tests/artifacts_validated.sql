-- Local artifacts that exist but failed structural validation.
{{ config(severity='warn') }}
SELECT root, sequence, attribute, path
FROM {{ ref('artifacts') }}
WHERE validated = false
