"""Every table of Kinetic Chain: the versioned migrations, applied by :meth:`storage.store.Store.migrate`.

:data:`MIGRATIONS` (log ``schema_migrations``): the processing service's tables.
Migration 1: ``patients``, ``devices``, ``sessions``, ``raw_batches`` (every accepted frame exactly
once, as wire-format payloads keyed by device and sequence range; a row holds a run of up to
``MAX_FRAMES`` frames of consecutive batches of one device and session, their payloads laid end to end,
see :func:`storage.raw.split_raw_rows`), ``strides``, ``session_summaries``, ``daily_summaries``,
``rejections`` (audit of bad input). Migration 2: ``accounts``, ``therapist_patients``, ``notes``,
``baselines``, ``flags``. Migration 3: ``live_strides`` (provisional strides of running sessions; times
in seconds since the Unix epoch on the collector's time base). Migration 4: ``weekly_summaries`` (per
patient and ISO 8601 week, ``week`` like ``2026-W48``, ``week_start`` its Monday). Migration 5:
``raw_session_ranges`` (per session and device, the range ``[first_seq, end_seq)`` that holds its raw
batches; it replaces an index of ``raw_batches`` by session). Migration 6: PostgreSQL keeps
``raw_batches.payload`` uncompressed (``STORAGE EXTERNAL``). Migration 7: ``patients.time_zone``, the IANA
time zone of the patient's days and weeks (``UTC`` unless set; :mod:`storage.patients`). Migration 8: flag
state (``flags.active``, ``since_day``, ``cleared_day``) and the detector's threshold, band and settings on each
baseline. Migration 9: ``flag_acknowledgements`` (a therapist's acknowledgement of a flag and its note).
Migration 10: ``accounts.session_epoch`` (sign-out, a password reset and disabling an account end its sessions).
Migration 11: ``calibrations`` (a patient's walk-ratio calibration, ``kinetic calibrate``).
Migration 12: ``session_stops`` and ``session_stop_ends`` (a session's stop and how far each device's data goes).

:data:`DASHBOARD_MIGRATIONS` (log ``dashboard_migrations``): the research exports' de-identification
tables. ``research_subjects``: per patient a random research label (never derived from the pseudonym),
a cohort name and (step 2) a random date shift in days; ``research_sessions``: per session a random label.

:data:`SIGNIN_TABLE_SQL`: ``signin_failures``, the dashboards' sign-in rate limit (keys are HMACs).

Times: ``*_us`` integers, microseconds since the Unix epoch.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE patients (
        pseudonym TEXT PRIMARY KEY,
        created_us BIGINT NOT NULL
    );
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        side TEXT NOT NULL CHECK (side IN ('L', 'R')),
        layout_id INTEGER NOT NULL,
        first_seen_us BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        start_us BIGINT NOT NULL,
        end_us BIGINT,
        state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        close_reason TEXT,
        devices_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX sessions_patient ON sessions (patient, start_us);
    CREATE TABLE raw_batches (
        device_id TEXT NOT NULL,
        first_seq BIGINT NOT NULL,
        n_frames INTEGER NOT NULL,
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        side TEXT NOT NULL,
        collector_time_us BIGINT NOT NULL,
        payload BYTEA NOT NULL,
        PRIMARY KEY (device_id, first_seq)
    );
    CREATE INDEX raw_batches_session ON raw_batches (session_id, side, first_seq);
    CREATE TABLE strides (
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        side TEXT NOT NULL,
        heel_strike_s DOUBLE PRECISION NOT NULL,
        patient TEXT NOT NULL,
        day TEXT NOT NULL,
        metrics_json TEXT NOT NULL,
        PRIMARY KEY (session_id, side, heel_strike_s)
    );
    CREATE TABLE session_summaries (
        session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
        patient TEXT NOT NULL,
        day TEXT NOT NULL,
        strides_n INTEGER NOT NULL,
        summary_json TEXT NOT NULL
    );
    CREATE TABLE daily_summaries (
        patient TEXT NOT NULL,
        day TEXT NOT NULL,
        sessions_n INTEGER NOT NULL,
        strides_n INTEGER NOT NULL,
        metrics_json TEXT NOT NULL,
        PRIMARY KEY (patient, day)
    );
    CREATE TABLE rejections (
        id {AUTO_ID},
        time_us BIGINT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        payload_head BYTEA
    );
    """,
    # 2: people and clinical state (dashboards, compensation detection)
    """
    CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('therapist', 'patient', 'researcher', 'admin')),
        password_hash TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        patient TEXT REFERENCES patients(pseudonym),
        created_us BIGINT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE therapist_patients (
        therapist TEXT NOT NULL REFERENCES accounts(username),
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        PRIMARY KEY (therapist, patient)
    );
    CREATE TABLE notes (
        id {AUTO_ID},
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        author TEXT NOT NULL,
        time_us BIGINT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE TABLE baselines (
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        metric TEXT NOT NULL,
        start_day TEXT NOT NULL,
        end_day TEXT NOT NULL,
        mean DOUBLE PRECISION NOT NULL,
        sd DOUBLE PRECISION NOT NULL,
        days_n INTEGER NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('auto', 'therapist')),
        set_by TEXT,
        updated_us BIGINT NOT NULL,
        PRIMARY KEY (patient, metric)
    );
    CREATE TABLE flags (
        id {AUTO_ID},
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        kind TEXT NOT NULL,
        metric TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('raised', 'cleared', 'improved')),
        day TEXT NOT NULL,
        baseline DOUBLE PRECISION NOT NULL,
        current DOUBLE PRECISION NOT NULL,
        threshold DOUBLE PRECISION NOT NULL,
        effect_size DOUBLE PRECISION NOT NULL,
        days_n INTEGER NOT NULL,
        evidence_json TEXT NOT NULL,
        created_us BIGINT NOT NULL
    );
    CREATE INDEX flags_patient ON flags (patient, day)
    """,
    # 3: provisional strides of running sessions (processing.analytics.online), replaced at session close
    """
    CREATE TABLE live_strides (
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        side TEXT NOT NULL,
        heel_strike_s DOUBLE PRECISION NOT NULL,
        patient TEXT NOT NULL,
        toe_off_s DOUBLE PRECISION NOT NULL,
        next_heel_strike_s DOUBLE PRECISION NOT NULL,
        stride_time_s DOUBLE PRECISION NOT NULL,
        stance_time_s DOUBLE PRECISION NOT NULL,
        swing_time_s DOUBLE PRECISION NOT NULL,
        stored_us BIGINT NOT NULL,
        PRIMARY KEY (session_id, side, heel_strike_s)
    )
    """,
    # 4: ISO-week summaries beside the daily ones (filled when sessions close)
    """
    CREATE TABLE weekly_summaries (
        patient TEXT NOT NULL,
        week TEXT NOT NULL,
        week_start TEXT NOT NULL,
        days_n INTEGER NOT NULL,
        sessions_n INTEGER NOT NULL,
        strides_n INTEGER NOT NULL,
        metrics_json TEXT NOT NULL,
        PRIMARY KEY (patient, week)
    )
    """,
    # 5: the sequence range each session holds of each device, instead of an index of raw_batches by session.
    # That index had one insertion point per streaming device, so every commit rewrote as many of its pages
    # (16 KiB each) and the cost per stored batch grew with the table; this table has one row per session
    # and device, updated once per commit (docs/benchmarks.md).
    """
    CREATE TABLE raw_session_ranges (
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        device_id TEXT NOT NULL,
        side TEXT NOT NULL,
        first_seq BIGINT NOT NULL,
        end_seq BIGINT NOT NULL,
        PRIMARY KEY (session_id, device_id)
    );
    INSERT INTO raw_session_ranges (session_id, device_id, side, first_seq, end_seq)
        SELECT session_id, device_id, MIN(side), MIN(first_seq), MAX(first_seq + n_frames)
        FROM raw_batches GROUP BY session_id, device_id;
    DROP INDEX raw_batches_session
    """,
    # 6: PostgreSQL stores raw payloads out of line without compressing them (statements marked {postgres} run
    # there only). A run of batches (~30 kB) went through pglz: 105 us per stored batch against 26 us with
    # EXTERNAL storage, which takes 48 MB where pglz took 36 MB for 45 MB of payloads (docs/benchmarks.md).
    """
    {postgres} ALTER TABLE raw_batches ALTER COLUMN payload SET STORAGE EXTERNAL
    """,
    # 7: the time zone a patient's days and weeks are counted in (an IANA name; insole_common.calendar)
    """
    ALTER TABLE patients ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC'
    """,
    # 8: flags are state and baselines carry what produced them (storage/flags.py, processing/flags.py). On a
    # raised event: ``active`` 1 while that flag is open (raised and no `cleared` event of its series since; one
    # row per open flag, its latest raise), ``since_day`` the first raise of its episode, ``cleared_day`` the day
    # the episode was cleared. On a baseline: the detector's real-change ``threshold`` for one day, the band
    # ``band_low``..``band_high`` (mean -/+ threshold) and the ``settings_json`` of the detection that made it.
    # Rows stored before keep NULLs until detection runs again for the patient (it rewrites them all).
    """
    ALTER TABLE flags ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE flags ADD COLUMN since_day TEXT;
    ALTER TABLE flags ADD COLUMN cleared_day TEXT;
    CREATE INDEX flags_active ON flags (active, patient);
    ALTER TABLE baselines ADD COLUMN threshold DOUBLE PRECISION;
    ALTER TABLE baselines ADD COLUMN band_low DOUBLE PRECISION;
    ALTER TABLE baselines ADD COLUMN band_high DOUBLE PRECISION;
    ALTER TABLE baselines ADD COLUMN settings_json TEXT
    """,
    # 9: a therapist's acknowledgement of a flag, with an optional note (storage/flags.py). A flag is named by
    # what survives the detector rewriting its rows: patient, series (``flags.metric``) and the first raise of
    # its episode (``since_day``); a row per acknowledgement, the newest is shown first.
    """
    CREATE TABLE flag_acknowledgements (
        id {AUTO_ID},
        patient TEXT NOT NULL REFERENCES patients(pseudonym),
        series TEXT NOT NULL,
        since_day TEXT NOT NULL,
        author TEXT NOT NULL,
        time_us BIGINT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX flag_acknowledgements_flag ON flag_acknowledgements (patient, series, since_day)
    """,
    # 10: revocable dashboard sessions (dashboards/auth.py). A session cookie carries the account's
    # ``session_epoch`` at sign-in; signing out, a password reset and disabling the account add one to it, so
    # every cookie signed before (copies included) stops working at once.
    """
    ALTER TABLE accounts ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0
    """,
    # 11: a patient's walk-ratio calibration (storage/calibrations.py; processing/analytics/walk_ratio.py): step
    # length / cadence from a calibration walk over a known distance (``kinetic calibrate``) or from the height;
    # the detector's stride length without an IMU. One row per patient, the latest.
    """
    CREATE TABLE calibrations (
        patient TEXT PRIMARY KEY,
        walk_ratio_m_per_spm DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL,
        detail_json TEXT NOT NULL,
        updated_us BIGINT NOT NULL
    )
    """,
    # 12: a session's stop as the collector sent it, with how far each device's data goes (one past its last
    # sequence number): the processing service closes the session once its stored data reaches that point (or
    # after a grace period), and attaches batches that arrive later to it (processing/sessions.py). Only
    # brokers that order per subscription (NATS) deliver a stop before the session's last batches.
    """
    CREATE TABLE session_stops (
        session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
        time_us BIGINT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE session_stop_ends (
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        device_id TEXT NOT NULL,
        end_seq BIGINT NOT NULL,
        PRIMARY KEY (session_id, device_id)
    );
    CREATE INDEX session_stop_ends_device ON session_stop_ends (device_id, end_seq)
    """,
)

DASHBOARD_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE research_subjects (
        patient TEXT PRIMARY KEY REFERENCES patients(pseudonym),
        label TEXT NOT NULL UNIQUE,
        cohort TEXT NOT NULL DEFAULT 'unassigned'
    );
    CREATE TABLE research_sessions (
        session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
        label TEXT NOT NULL UNIQUE
    )
    """,
    # 2: per-subject date shift for de-identified exports (research.deid)
    """
    ALTER TABLE research_subjects ADD COLUMN date_shift_days INTEGER
    """,
)

SIGNIN_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS signin_failures ("
    "key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_us BIGINT NOT NULL)"
)
