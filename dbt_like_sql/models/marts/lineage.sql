-- Provenance of our own outputs: one row per vipe/<n>_manifest.json, with the artifacts beside it.
WITH files AS (
    SELECT root, sequence, list(attribute ORDER BY attribute) AS attributes
    FROM {{ ref('stg_artifacts') }}
    WHERE attribute <> 'manifest'
    GROUP BY root, sequence
)
SELECT
    m.sequence,
    v.dataset,
    m.root,
    m.path AS manifest_path,
    m.created,
    m.input_uri,
    m.input_hash,
    m.code_version,
    m.scale,
    m.config_json,
    m.packages_json,
    m.timings_json,
    m.metrics_json,
    coalesce(f.attributes, []) AS attributes
FROM {{ ref('stg_manifests') }} AS m
LEFT JOIN {{ ref('videos') }} AS v ON v.sequence = m.sequence
LEFT JOIN files AS f ON f.root = m.root AND f.sequence = m.sequence
