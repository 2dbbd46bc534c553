-- Hand-written DuckDB SQL: the weekly report rows of a subset of metrics, for bench/report.py.
--
-- Placeholders (string.Template, substituted by bench/report.py): $key (capability or team),
-- $start and $end (the report range, dates, end exclusive). Run on the heatlens store file.
-- Sections: `usage` always; `dora` only for $key = team (DORA metrics have no capability key).
-- Each section's last statement returns rows (metric, period, seg, value, n).
--
-- The rules are DESIGN §3–§4 written directly, without heatlens's code:
--   * weeks start Monday 00:00 UTC; only [$start, $end) is bucketed; first/last clipped;
--   * usage team = own `team`, else the owner of its `service`, else the actor's team by membership
--     at `ts` (overlaps: the latest `from` wins, ties the lowest team id; `to` exclusive);
--   * counts are 0 for every segment value existing in the period (registry teams not archived
--     and created before the period's end, capabilities launched by its end, plus values in no
--     registry seen anywhere in the store); proportions and quantiles only with observations;
--   * no rows for a registry capability in periods that end before its launch;
--   * quantiles are quantile_cont (linear);
--   * (v2) usage by an actor ending in `[bot]` counts in tasks, not in adoption (active users and
--     teams, adoption rate, new teams, retention);
--   * eligible teams: registry teams that are no team's parent, created before the period's end
--     and not archived by its start; for a capability only in periods ending after its launch
--     and only the teams of its `eligible` list; by team, 1 for such a team, else 0;
--   * adoption rate: active ∩ eligible ÷ eligible (by team: active on any capability), where
--     some team is eligible;
--   * new teams: (team, capability | team) pairs whose first usage ever falls in the period;
--     (v2) omitted in the week holding the first stored usage of the capability (of anything by
--     team), bots included, unless the capability launched at or after that week's start;
--   * retention: teams active in the previous week (minus those archived by this period's start)
--     still active in this one, where there were any;
--   * a DORA deployment is a successful one whose environment is production or prod; incidents
--     link by deployment_id, else root_cause_sha (a deployment finished by the incident), else the
--     latest deployment of their service (never a rollback) finished at most 7 days before they
--     opened (the default window);
--   * (v2) a deployment is failed when an incident links to it or a later rollback or hotfix of
--     its service remediates it (the latest earlier deployment that is not a rollback); the
--     change failure rate is omitted where no service of the row has a failure signal (an
--     incident naming it or linked to it, or a deployment of known kind); rework is over known
--     kinds; only teams that own a service or appear on a deployment have DORA rows.

-- @section usage
SET TimeZone = 'UTC';

CREATE OR REPLACE TEMP TABLE periods AS
SELECT greatest(w, DATE '$start') AS period, w AS cal_start,
       least(w + 7, DATE '$end') AS period_end,
       greatest(w, DATE '$start')::TIMESTAMPTZ AS start_utc,
       least(w + 7, DATE '$end')::TIMESTAMPTZ AS end_utc
FROM (SELECT unnest(generate_series(date_trunc('week', DATE '$start')::TIMESTAMP,
                                    (DATE '$end' - 1)::TIMESTAMP, INTERVAL 7 DAY))::DATE AS w);

-- all usage (new teams look at all history) with its resolved team, and `bot`
CREATE OR REPLACE TEMP TABLE ua AS
WITH base AS (
    SELECT u.id, u.ts, u.capability, u.actor, u.outcome, u.duration_s,
           coalesce(u.team, s.team) AS team
    FROM usage u LEFT JOIN service s ON u.service = s.id
    WHERE u.ts < TIMESTAMPTZ '$end 00:00:00+00'
), resolved AS (
SELECT ts, capability, actor, outcome, duration_s, team FROM base WHERE team IS NOT NULL
UNION ALL
SELECT any_value(b.ts), any_value(b.capability), any_value(b.actor), any_value(b.outcome),
       any_value(b.duration_s),
       min_by(m.team, {'latest': -epoch_us(coalesce(m."from", TIMESTAMPTZ '1970-01-01 00:00:00+00')),
                       'team': m.team})
FROM base b
LEFT JOIN membership m
  ON m.actor = b.actor
 AND b.ts >= coalesce(m."from", TIMESTAMPTZ '1970-01-01 00:00:00+00')
 AND b.ts < coalesce(m."to", TIMESTAMPTZ '2200-01-01 00:00:00+00')
WHERE b.team IS NULL
GROUP BY b.id
)
SELECT *, coalesce(suffix(lower(actor), '[bot]'), false) AS bot FROM resolved;

CREATE OR REPLACE TEMP TABLE u AS
SELECT greatest(date_trunc('week', ts)::DATE, DATE '$start') AS period, * FROM ua
WHERE ts >= TIMESTAMPTZ '$start 00:00:00+00';

-- values of $key that exist in each period (for zero-filled counts)
CREATE OR REPLACE TEMP TABLE seen_team AS
SELECT DISTINCT v FROM (
    SELECT team AS v FROM membership UNION ALL SELECT team FROM service
    UNION ALL SELECT team FROM usage UNION ALL SELECT team FROM deployment
    UNION ALL SELECT team FROM change UNION ALL SELECT team FROM incident
    UNION ALL SELECT team FROM survey_response UNION ALL SELECT team FROM survey_invitation
    UNION ALL SELECT parent FROM team
) WHERE v IS NOT NULL AND v NOT IN (SELECT id FROM team);

CREATE OR REPLACE TEMP TABLE seen_capability AS
SELECT DISTINCT v FROM (
    SELECT capability AS v FROM usage UNION ALL SELECT capability FROM survey_response
    UNION ALL SELECT unnest(from_json(questions, '[{"capability": "VARCHAR"}]')).capability
    FROM survey
) WHERE v IS NOT NULL AND v NOT IN (SELECT id FROM capability);

CREATE OR REPLACE TEMP TABLE domain_team AS
SELECT p.period, t.id AS seg FROM periods p JOIN team t
  ON (t.created_at IS NULL OR t.created_at < p.end_utc)
 AND (t.archived_at IS NULL OR t.archived_at > p.start_utc)
UNION SELECT p.period, s.v FROM periods p, seen_team s;

CREATE OR REPLACE TEMP TABLE domain_capability AS
SELECT p.period, c.id AS seg FROM periods p JOIN capability c
  ON c.launched_at IS NULL OR c.launched_at <= p.end_utc
UNION SELECT p.period, s.v FROM periods p, seen_capability s;

-- periods that end before a registry capability's launch show no row for it
CREATE OR REPLACE TEMP TABLE hidden AS
SELECT p.period, c.id AS seg FROM periods p JOIN capability c ON p.end_utc < c.launched_at
WHERE '$key' = 'capability';

CREATE OR REPLACE TEMP TABLE ustats AS
SELECT period, $key AS seg,
       count(DISTINCT actor) FILTER (WHERE NOT bot) AS users,
       count(DISTINCT team) FILTER (WHERE NOT bot) AS teams,
       count(outcome) AS attempts,
       count(*) FILTER (WHERE outcome = 'success') AS success,
       count(*) FILTER (WHERE outcome = 'failure') AS failure,
       count(*) FILTER (WHERE outcome = 'error') AS error,
       count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
       count(duration_s) FILTER (WHERE outcome = 'success') AS durations,
       quantile_cont(duration_s, 0.5) FILTER (WHERE outcome = 'success') AS p50,
       quantile_cont(duration_s, 0.9) FILTER (WHERE outcome = 'success') AS p90
FROM u GROUP BY ALL;

-- adoption: (period, segment, team) with usage by people
CREATE OR REPLACE TEMP TABLE active AS
SELECT DISTINCT period, $key AS seg, team FROM u WHERE NOT bot AND team IS NOT NULL;

-- eligible teams per (period, segment): registry teams that are no team's parent and exist
CREATE OR REPLACE TEMP TABLE base AS
SELECT p.period, p.end_utc, t.id AS team FROM periods p JOIN team t
  ON (t.created_at IS NULL OR t.created_at < p.end_utc)
 AND (t.archived_at IS NULL OR t.archived_at > p.start_utc)
WHERE t.id NOT IN (SELECT parent FROM team WHERE parent IS NOT NULL);

CREATE OR REPLACE TEMP TABLE elig AS
SELECT d.period, d.seg, b.team
FROM domain_capability d JOIN base b ON d.period = b.period LEFT JOIN capability c ON c.id = d.seg
WHERE '$key' = 'capability' AND (c.launched_at IS NULL OR b.end_utc > c.launched_at)
  AND (c.eligible IS NULL OR list_contains(c.eligible, b.team))
UNION ALL
SELECT b.period, b.team, b.team FROM base b WHERE '$key' = 'team';

CREATE OR REPLACE TEMP TABLE eligible AS
SELECT d.period, d.seg, count(e.team) AS teams, count(a.team) AS used
FROM domain_$key d
LEFT JOIN elig e ON d.period = e.period AND d.seg = e.seg
LEFT JOIN active a ON a.period = e.period AND a.seg = e.seg AND a.team = e.team
GROUP BY ALL;

-- new teams: first usage ever of each (segment, team), by people
CREATE OR REPLACE TEMP TABLE newteams AS
SELECT p.period, f.seg, count(*) AS teams
FROM (SELECT $key AS seg, team, min(ts) AS first FROM ua WHERE NOT bot AND team IS NOT NULL
      GROUP BY ALL) f
JOIN periods p ON f.first >= p.start_utc AND f.first < p.end_utc
GROUP BY ALL;

-- history_start: the week holding a capability's (anything's, by team) first stored usage
CREATE OR REPLACE TEMP TABLE history AS
SELECT p.period, c.capability AS seg
FROM (SELECT capability, min(ts) AS first FROM usage GROUP BY ALL) c
JOIN periods p ON date_trunc('week', c.first)::DATE = p.cal_start
LEFT JOIN capability r ON r.id = c.capability
WHERE '$key' = 'capability' AND (r.launched_at IS NULL OR r.launched_at < p.cal_start::TIMESTAMPTZ)
UNION ALL
SELECT p.period, d.seg
FROM (SELECT min(ts) AS first FROM usage) c
JOIN periods p ON date_trunc('week', c.first)::DATE = p.cal_start
JOIN domain_team d ON d.period = p.period
WHERE '$key' = 'team';

-- retention: teams active in the previous calendar week, minus those archived by the period's
-- start, that are active in this period
CREATE OR REPLACE TEMP TABLE retention AS
SELECT p.period, b.seg, count(n.team) AS kept, count(*) AS before
FROM periods p
JOIN (SELECT DISTINCT date_trunc('week', ts)::DATE AS week, $key AS seg, team FROM ua
      WHERE NOT bot AND team IS NOT NULL
        AND ts >= TIMESTAMPTZ '$start 00:00:00+00' - INTERVAL 7 DAY) b
  ON b.week = p.cal_start - 7
LEFT JOIN team t ON t.id = b.team
LEFT JOIN active n ON n.period = p.period AND n.seg = b.seg AND n.team = b.team
WHERE t.archived_at IS NULL OR t.archived_at > p.start_utc
GROUP BY ALL;

WITH cells AS (
    SELECT period, seg FROM ustats UNION SELECT period, seg FROM domain_$key
),
filled AS (
    SELECT c.period, c.seg, coalesce(s.users, 0) AS users, coalesce(s.teams, 0) AS teams,
           coalesce(s.attempts, 0) AS attempts, s.success, s.failure, s.error, s.abandoned,
           s.durations, s.p50, s.p90
    FROM (SELECT * FROM cells ANTI JOIN hidden h ON cells.period = h.period
          AND cells.seg = h.seg) c
    LEFT JOIN ustats s ON c.period = s.period AND c.seg IS NOT DISTINCT FROM s.seg
),
rows AS (
    SELECT period, seg, 'adoption.active_users' AS metric, users::DOUBLE AS value, users AS n
    FROM filled
    UNION ALL SELECT period, seg, 'adoption.active_teams', teams, teams FROM filled
    UNION ALL SELECT period, seg, 'task.attempts', attempts, attempts FROM filled
    UNION ALL SELECT period, seg, 'task.success_rate', success / attempts, attempts
    FROM filled WHERE attempts > 0
    UNION ALL SELECT period, seg, 'task.failure_rate', failure / attempts, attempts
    FROM filled WHERE attempts > 0
    UNION ALL SELECT period, seg, 'task.error_rate', error / attempts, attempts
    FROM filled WHERE attempts > 0
    UNION ALL SELECT period, seg, 'task.abandon_rate', abandoned / attempts, attempts
    FROM filled WHERE attempts > 0
    UNION ALL SELECT period, seg, 'efficiency.task_duration_p50', p50, durations
    FROM filled WHERE durations > 0
    UNION ALL SELECT period, seg, 'efficiency.task_duration_p90', p90, durations
    FROM filled WHERE durations > 0
    UNION ALL SELECT period, seg, 'adoption.eligible_teams', teams, teams FROM eligible
    UNION ALL SELECT period, seg, 'adoption.team_adoption_rate', used / teams, teams
    FROM eligible WHERE teams > 0
    UNION ALL SELECT d.period, d.seg, 'adoption.new_teams', coalesce(n.teams, 0),
                     coalesce(n.teams, 0)
    FROM (SELECT * FROM domain_$key UNION SELECT period, seg FROM newteams) d
    LEFT JOIN newteams n ON d.period = n.period AND d.seg = n.seg
    ANTI JOIN history h ON d.period = h.period AND d.seg = h.seg
    UNION ALL SELECT period, seg, 'adoption.team_retention', kept / before, before
    FROM retention
)
SELECT metric, period, seg, value, n FROM rows r
ANTI JOIN hidden h ON r.period = h.period AND r.seg = h.seg;

-- @section dora
-- successful production deployments with their team (own, else the service's owner)
CREATE OR REPLACE TEMP TABLE d AS
SELECT dp.id, dp.service, dp.finished_at, dp.commit_sha, dp.commits, dp.kind,
       coalesce(dp.team, s.team) AS team
FROM deployment dp LEFT JOIN service s ON dp.service = s.id
WHERE dp.result = 'success' AND lower(dp.environment) IN ('production', 'prod');

-- every (deployment, sha) it ships: its commit_sha and its commits list
CREATE OR REPLACE TEMP TABLE shipped AS
SELECT id, service, finished_at, commit_sha AS sha FROM d WHERE commit_sha IS NOT NULL
UNION
SELECT id, service, finished_at, sha FROM (
    SELECT id, service, finished_at, unnest(commits) AS sha FROM d WHERE commits IS NOT NULL
) WHERE sha IS NOT NULL;

-- deployments with at least one linked incident
CREATE OR REPLACE TEMP TABLE linked AS
SELECT d.id FROM incident i JOIN d ON i.deployment_id = d.id
UNION
SELECT min_by(s.id, (s.finished_at, s.id)) FROM incident i JOIN shipped s
  ON i.root_cause_sha = s.sha AND (i.service IS NULL OR i.service = s.service)
 AND s.finished_at <= i.opened_at
WHERE i.deployment_id IS NULL
GROUP BY i.id
UNION
SELECT max_by(d.id, (d.finished_at, d.id)) FROM incident i JOIN d
  ON i.service = d.service AND d.finished_at <= i.opened_at
 AND i.opened_at <= d.finished_at + INTERVAL 7 DAY
 AND (d.kind IS NULL OR d.kind <> 'rollback')
WHERE i.deployment_id IS NULL AND i.root_cause_sha IS NULL
  AND (i.cause IS NULL OR i.cause <> 'external')
GROUP BY i.id;

-- failed: linked, or remediated by a later rollback/hotfix of the service (the latest earlier
-- deployment that is not itself a rollback)
CREATE OR REPLACE TEMP TABLE failed AS
WITH seq AS (
    SELECT id, service, kind, (kind IS NULL OR kind <> 'rollback') AS cand,
           sum(CASE WHEN kind IS NULL OR kind <> 'rollback' THEN 1 ELSE 0 END)
               OVER (PARTITION BY service ORDER BY finished_at, id ROWS UNBOUNDED PRECEDING) AS k
    FROM d
)
SELECT id FROM linked
UNION
SELECT t.id FROM seq f JOIN seq t
  ON f.service = t.service AND t.cand AND t.k = f.k - CASE WHEN f.cand THEN 1 ELSE 0 END
WHERE f.kind IN ('rollback', 'hotfix');

-- services with a failure signal (ever): an incident names it or links to it, or a known kind
CREATE OR REPLACE TEMP TABLE signal AS
SELECT service FROM incident WHERE service IS NOT NULL
UNION SELECT d.service FROM linked l JOIN d ON l.id = d.id
UNION SELECT service FROM d WHERE kind IS NOT NULL;

-- the teams with DORA rows: they own a service or appear on a deployment
CREATE OR REPLACE TEMP TABLE delivering AS
SELECT team FROM service WHERE team IS NOT NULL
UNION SELECT team FROM deployment WHERE team IS NOT NULL;

-- lead time: per (change, service) the first deployment shipping it
CREATE OR REPLACE TEMP TABLE lead AS
SELECT d.team, d.finished_at,
       (epoch_us(d.finished_at) - epoch_us(f.committed_at))::DOUBLE / 3600000000.0 AS hours
FROM (
    SELECT min_by(s.id, (s.finished_at, s.id)) AS dep, any_value(c.committed_at) AS committed_at
    FROM shipped s JOIN change c ON s.sha = c.id
    GROUP BY s.sha, s.service
) f JOIN d ON f.dep = d.id
WHERE d.finished_at >= TIMESTAMPTZ '$start 00:00:00+00'
  AND d.finished_at < TIMESTAMPTZ '$end 00:00:00+00';

CREATE OR REPLACE TEMP TABLE dstats AS
SELECT greatest(date_trunc('week', d.finished_at)::DATE, DATE '$start') AS period, d.team AS seg,
       count(*) AS deployments, count(f.id) AS failed,
       count(*) FILTER (WHERE d.kind IN ('hotfix', 'rollback')) AS rework,
       count(d.kind) AS known, count(g.service) AS signalled
FROM d LEFT JOIN failed f ON d.id = f.id LEFT JOIN signal g ON d.service = g.service
WHERE d.finished_at >= TIMESTAMPTZ '$start 00:00:00+00'
  AND d.finished_at < TIMESTAMPTZ '$end 00:00:00+00'
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE lstats AS
SELECT greatest(date_trunc('week', finished_at)::DATE, DATE '$start') AS period, team AS seg,
       count(*) AS n, quantile_cont(hours, 0.5) AS p50, quantile_cont(hours, 0.9) AS p90
FROM lead WHERE hours >= 0 GROUP BY ALL;

WITH filled AS (
    SELECT c.period, c.seg, p.period_end - p.period AS days,
           coalesce(s.deployments, 0) AS deployments, s.failed, s.rework, s.known, s.signalled
    FROM (SELECT period, seg FROM dstats UNION SELECT period, seg FROM domain_team) c
    JOIN periods p ON c.period = p.period
    LEFT JOIN dstats s ON c.period = s.period AND c.seg IS NOT DISTINCT FROM s.seg
    WHERE c.seg IS NULL OR c.seg IN (SELECT team FROM delivering)
)
SELECT 'dora.deployments' AS metric, period, seg, deployments::DOUBLE AS value, deployments AS n
FROM filled
UNION ALL SELECT 'dora.deployment_frequency', period, seg, deployments / days, deployments
FROM filled
UNION ALL SELECT 'dora.change_failure_rate', period, seg, failed / deployments, deployments
FROM filled WHERE deployments > 0 AND signalled > 0
UNION ALL SELECT 'dora.rework_rate', period, seg, rework / known, known
FROM filled WHERE known > 0
UNION ALL SELECT 'dora.lead_time_p50', period, seg, p50, n FROM lstats
UNION ALL SELECT 'dora.lead_time_p90', period, seg, p90, n FROM lstats;
