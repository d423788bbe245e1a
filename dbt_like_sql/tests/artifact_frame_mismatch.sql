-- Local artifacts whose frame count differs from meta.parquet (known: Dynpose++ poses off by one, #49).
{{ config(severity='warn') }}
SELECT root, sequence, attribute, frame_count, expected_frames
FROM {{ ref('artifacts') }}
WHERE frame_mismatch
