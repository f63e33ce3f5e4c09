-- The Insight tables (CONTRACT section 4). Every synced table carries the sync
-- columns id, tenant_id, version, updated_at, deleted; store-scoped ones store_id.

CREATE TABLE forms (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted     boolean NOT NULL DEFAULT false,
    title       text NOT NULL,
    description text
);

CREATE TABLE form_sections (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted    boolean NOT NULL DEFAULT false,
    form_id    uuid NOT NULL REFERENCES forms(id),
    title      text,
    position   integer
);
CREATE INDEX form_sections_form ON form_sections (form_id);

CREATE TABLE fields (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted    boolean NOT NULL DEFAULT false,
    form_id    uuid NOT NULL REFERENCES forms(id),
    section_id uuid REFERENCES form_sections(id),
    label      text NOT NULL,
    field_type text,
    required   boolean NOT NULL DEFAULT false,
    position   integer
);
CREATE INDEX fields_form ON fields (form_id);
CREATE INDEX fields_section ON fields (section_id);

CREATE TABLE form_templates (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted    boolean NOT NULL DEFAULT false,
    name       text NOT NULL,
    definition jsonb
);

CREATE TABLE settings (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted    boolean NOT NULL DEFAULT false,
    key        text NOT NULL,
    value      jsonb
);

CREATE TABLE team (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted    boolean NOT NULL DEFAULT false,
    store_id   text NOT NULL,
    name       text NOT NULL,
    role       text
);

CREATE TABLE submissions (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    version      bigint NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted      boolean NOT NULL DEFAULT false,
    form_id      uuid NOT NULL REFERENCES forms(id),
    store_id     text NOT NULL,
    status       text NOT NULL DEFAULT 'in_progress'
                 CONSTRAINT submissions_status_check CHECK (status IN ('in_progress', 'completed')),
    submitted_by text
);
CREATE INDEX submissions_form ON submissions (form_id);

CREATE TABLE submission_answers (
    id            uuid PRIMARY KEY,
    tenant_id     text NOT NULL,
    version       bigint NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted       boolean NOT NULL DEFAULT false,
    submission_id uuid NOT NULL REFERENCES submissions(id),
    field_id      uuid REFERENCES fields(id),
    store_id      text NOT NULL,
    value         jsonb
);
CREATE INDEX submission_answers_submission ON submission_answers (submission_id);
CREATE INDEX submission_answers_field ON submission_answers (field_id);

CREATE TABLE kpi_data (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted    boolean NOT NULL DEFAULT false,
    store_id   text NOT NULL,
    metric     text NOT NULL,
    value      numeric,
    period     text
);

SELECT sync_register('forms',              'manager_wins', '{manager,store}', '{manager}');
SELECT sync_register('form_sections',      'manager_wins', '{manager,store}', '{manager}');
SELECT sync_register('fields',             'manager_wins', '{manager,store}', '{manager}');
SELECT sync_register('form_templates',     'manager_wins', '{manager}',       '{manager}');
SELECT sync_register('settings',           'manager_wins', '{manager,store}', '{manager}');
SELECT sync_register('team',               'server_wins',  '{manager,store}', '{manager}', 'store_id');
SELECT sync_register('submissions',        'latest_wins',  '{manager,store}', '{manager,store}', 'store_id');
SELECT sync_register('submission_answers', 'latest_wins',  '{manager,store}', '{manager,store}', 'store_id');
SELECT sync_register('kpi_data',           'latest_wins',  '{manager,store}', '{manager,store}', 'store_id');
