-- Released videos have a frame count inside their dataset's documented range (wsdg 26-81, w360 70-501).
{{ config(meta={'dagster': {'ref': {'name': 'videos'}}}) }}
SELECT v.dataset, v.sequence, v.num_frames, d.num_frames_min, d.num_frames_max
FROM {{ ref('videos') }} AS v
JOIN {{ ref('datasets') }} AS d ON d.name = v.dataset
WHERE d.num_frames_min IS NOT NULL
  AND (v.num_frames < d.num_frames_min OR v.num_frames > d.num_frames_max)
