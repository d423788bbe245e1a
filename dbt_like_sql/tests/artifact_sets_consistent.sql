-- Local sequences whose files do not form one artifact set: files of two runs (generation mismatch, see
-- vipe_dagster/io/generation.py) or per-frame attributes with different frame counts. Their statistics in
-- video_stats are left empty.
{{ config(severity='warn') }}
SELECT root, sequence, generation, generation_ok, frame_counts_agree, problems
FROM {{ ref('video_stats') }}
WHERE NOT coalesce(generation_ok, true) OR NOT coalesce(frame_counts_agree, true)
