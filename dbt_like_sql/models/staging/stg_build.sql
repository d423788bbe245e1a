-- One row describing this build.
SELECT build_id, built_at, code_version FROM {{ source('catalog_raw', 'build') }}
