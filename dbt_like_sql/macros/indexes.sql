{#- Index support for DuckDB: a model lists its indexes as config(meta={'indexes': [['col', ...], ...]}).
    The pre-hook drops the model's indexes (DuckDB cannot rename a table that has indexes, and dbt swaps the
    new table in by renaming); the post-hook creates idx_<model>_<i> on the new table. -#}
{% macro _catalog_indexes() %}
  {{ return(config.meta_get('indexes', []) or []) }}
{% endmacro %}

{% macro drop_catalog_indexes() %}
  {%- for cols in _catalog_indexes() -%}
    DROP INDEX IF EXISTS {{ this.schema }}.idx_{{ this.identifier }}_{{ loop.index0 }};
  {%- endfor -%}
{% endmacro %}

{% macro create_catalog_indexes() %}
  {%- for cols in _catalog_indexes() -%}
    CREATE INDEX idx_{{ this.identifier }}_{{ loop.index0 }} ON {{ this }} ({{ cols | join(', ') }});
  {%- endfor -%}
{% endmacro %}
