-- Our provenance manifests (vipe/<n>_manifest.json), flattened.
SELECT
    root, sequence, path, created, input_uri, input_hash, code_version, scale,
    config_json, packages_json, timings_json, metrics_json, manifest_json
FROM {{ source('catalog_raw', 'manifests') }}
