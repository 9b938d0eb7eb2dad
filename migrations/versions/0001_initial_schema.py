"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 09:29:04.838407
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# The dispatcher LISTENs on this channel. One notification per statement (and PostgreSQL folds
# identical notifications of one transaction into one), so a bulk insert of 10,000 jobs wakes
# the dispatcher once, not 10,000 times.
NOTIFY_CHANNEL = "jobs_ready"
CREATE_NOTIFY = f"""
CREATE FUNCTION jobs_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify_ready AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_ready();
"""
DROP_NOTIFY = """
DROP TRIGGER IF EXISTS jobs_notify_ready ON jobs;
DROP FUNCTION IF EXISTS jobs_notify_ready();
"""


def upgrade() -> None:
    op.create_table('job_metrics',
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('job_type', sa.Text(), nullable=False),
    sa.Column('started', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('succeeded', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('failed', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('retried', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('run_p50_ms', sa.Double(), nullable=True),
    sa.Column('run_p95_ms', sa.Double(), nullable=True),
    sa.Column('run_max_ms', sa.Double(), nullable=True),
    sa.Column('failure_rate', sa.Double(), nullable=True),
    sa.PrimaryKeyConstraint('bucket', 'job_type', name=op.f('pk_job_metrics'))
    )
    op.create_table('leases',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('holder', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_table('proxies',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('host', sa.Text(), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('username', sa.Text(), nullable=True),
    sa.Column('password_encrypted', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'active'"), nullable=False),
    sa.Column('health_score', sa.SmallInteger(), server_default=sa.text('100'), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_latency_ms', sa.Double(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('active', 'degraded', 'dead', 'disabled')", name=op.f('ck_proxies_status_valid')),
    sa.CheckConstraint("type IN ('http', 'https', 'socks4', 'socks5')", name=op.f('ck_proxies_type_valid')),
    sa.CheckConstraint('consecutive_failures >= 0', name=op.f('ck_proxies_consecutive_failures_not_negative')),
    sa.CheckConstraint('health_score BETWEEN 0 AND 100', name=op.f('ck_proxies_health_score_range')),
    sa.CheckConstraint('port BETWEEN 1 AND 65535', name=op.f('ck_proxies_port_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proxies')),
    sa.UniqueConstraint('type', 'host', 'port', 'username', name=op.f('uq_proxies_type_host_port_username'))
    )
    op.create_table('queue_metrics',
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queue', sa.Text(), nullable=False),
    sa.Column('enqueued', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('started', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('succeeded', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('failed', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('retried', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('depth', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('oldest_waiting_seconds', sa.Double(), nullable=True),
    sa.Column('wait_p50_ms', sa.Double(), nullable=True),
    sa.Column('wait_p95_ms', sa.Double(), nullable=True),
    sa.Column('run_p50_ms', sa.Double(), nullable=True),
    sa.Column('run_p95_ms', sa.Double(), nullable=True),
    sa.PrimaryKeyConstraint('bucket', 'queue', name=op.f('pk_queue_metrics'))
    )
    op.create_table('queues',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('paused', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('dispatch_window', sa.Integer(), nullable=True),
    sa.Column('concurrency_limit', sa.Integer(), nullable=True),
    sa.Column('rate_limit', sa.Integer(), nullable=True),
    sa.Column('rate_period_seconds', sa.Double(), nullable=True),
    sa.Column('retention_seconds', sa.Integer(), server_default=sa.text('604800'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'", name=op.f('ck_queues_name_format')),
    sa.CheckConstraint('(rate_limit IS NULL) = (rate_period_seconds IS NULL) AND (rate_limit IS NULL OR rate_limit > 0)', name=op.f('ck_queues_rate_limit_pair')),
    sa.CheckConstraint('concurrency_limit IS NULL OR concurrency_limit > 0', name=op.f('ck_queues_concurrency_limit_positive')),
    sa.CheckConstraint('dispatch_window IS NULL OR dispatch_window > 0', name=op.f('ck_queues_dispatch_window_positive')),
    sa.CheckConstraint('retention_seconds > 0', name=op.f('ck_queues_retention_positive')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_queues'))
    )
    op.create_table('users',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('display_name', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('external_id', name=op.f('uq_users_external_id'))
    )
    op.create_table('workers',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('hostname', sa.Text(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('queues', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'online'"), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_heartbeat_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("state IN ('online', 'stopping', 'stopped')", name=op.f('ck_workers_state_valid')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workers'))
    )
    op.create_index('ix_workers_last_heartbeat_at', 'workers', ['last_heartbeat_at'], unique=False)
    op.create_table('posts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('media_url', sa.Text(), nullable=True),
    sa.Column('state', sa.Text(), server_default=sa.text("'draft'"), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("state IN ('draft', 'scheduled', 'publishing', 'published', 'failed', 'cancelled')", name=op.f('ck_posts_state_valid')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_posts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_posts'))
    )
    op.create_index('ix_posts_due', 'posts', ['scheduled_at'], unique=False, postgresql_where=sa.text("state = 'scheduled'"))
    op.create_table('proactive_messages',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('send_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('send_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('telegram_message_id', sa.BigInteger(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('needs_review', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'cancelled')", name=op.f('ck_proactive_messages_state_valid')),
    sa.CheckConstraint('length(text) BETWEEN 1 AND 4096', name=op.f('ck_proactive_messages_text_length')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_proactive_messages_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proactive_messages'))
    )
    op.create_index('ix_proactive_messages_due', 'proactive_messages', ['send_at'], unique=False, postgresql_where=sa.text("state = 'pending'"))
    op.create_table('proxy_health_logs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('proxy_id', sa.BigInteger(), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('latency_ms', sa.Double(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error_class', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('exit_ip', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['proxy_id'], ['proxies.id'], name=op.f('fk_proxy_health_logs_proxy_id_proxies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proxy_health_logs'))
    )
    op.create_index('ix_proxy_health_logs_proxy_id_checked_at', 'proxy_health_logs', ['proxy_id', 'checked_at'], unique=False)
    op.create_table('schedules',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('cron', sa.Text(), nullable=False),
    sa.Column('timezone', sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
    sa.Column('job_type', sa.Text(), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('queue', sa.Text(), nullable=False),
    sa.Column('priority', sa.SmallInteger(), server_default=sa.text('5'), nullable=False),
    sa.Column('misfire_policy', sa.Text(), server_default=sa.text("'run_once'"), nullable=False),
    sa.Column('catch_up_limit', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('jitter_seconds', sa.Double(), server_default=sa.text('0'), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('source', sa.Text(), server_default=sa.text("'api'"), nullable=False),
    sa.Column('next_fire_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_fire_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("jsonb_typeof(payload) = 'object'", name=op.f('ck_schedules_payload_is_object')),
    sa.CheckConstraint("misfire_policy IN ('skip', 'run_once', 'catch_up')", name=op.f('ck_schedules_misfire_policy_valid')),
    sa.CheckConstraint("source IN ('code', 'api')", name=op.f('ck_schedules_source_valid')),
    sa.CheckConstraint('catch_up_limit >= 1', name=op.f('ck_schedules_catch_up_limit_positive')),
    sa.CheckConstraint('jitter_seconds >= 0', name=op.f('ck_schedules_jitter_not_negative')),
    sa.CheckConstraint('priority BETWEEN 0 AND 9', name=op.f('ck_schedules_priority_range')),
    sa.ForeignKeyConstraint(['queue'], ['queues.name'], name=op.f('fk_schedules_queue_queues'), onupdate='CASCADE', ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules')),
    sa.UniqueConstraint('name', name=op.f('uq_schedules_name'))
    )
    op.create_index('ix_schedules_next_fire_at', 'schedules', ['next_fire_at'], unique=False, postgresql_where=sa.text('enabled'))
    op.create_table('social_accounts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('platform', sa.Text(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('access_token_encrypted', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'active'"), nullable=False),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("platform IN ('telegram', 'webhook', 'threads', 'instagram')", name=op.f('ck_social_accounts_platform_valid')),
    sa.CheckConstraint("status IN ('active', 'expired', 'disabled')", name=op.f('ck_social_accounts_status_valid')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_social_accounts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_social_accounts')),
    sa.UniqueConstraint('platform', 'external_id', name=op.f('uq_social_accounts_platform_external_id'))
    )
    op.create_table('telegram_connections',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('bot_token_encrypted', sa.Text(), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deactivated_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_telegram_connections_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_telegram_connections'))
    )
    op.create_index('uq_telegram_connections_user_active', 'telegram_connections', ['user_id'], unique=True, postgresql_where=sa.text('is_active'))
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('queue', sa.Text(), server_default=sa.text("'default'"), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'queued'"), nullable=False),
    sa.Column('priority', sa.SmallInteger(), server_default=sa.text('5'), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('max_attempts', sa.Integer(), server_default=sa.text('20'), nullable=False),
    sa.Column('timeout_seconds', sa.Double(), nullable=True),
    sa.Column('run_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('worker_id', sa.Text(), nullable=True),
    sa.Column('progress', sa.Double(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unique_key', sa.Text(), nullable=True),
    sa.Column('limit_key', sa.Text(), nullable=True),
    sa.Column('schedule_id', sa.BigInteger(), nullable=True),
    sa.Column('fire_time', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("jsonb_typeof(metadata) = 'object'", name=op.f('ck_jobs_metadata_is_object')),
    sa.CheckConstraint("jsonb_typeof(payload) = 'object'", name=op.f('ck_jobs_payload_is_object')),
    sa.CheckConstraint("state IN ('waiting', 'scheduled', 'queued', 'dispatched', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_jobs_state_valid')),
    sa.CheckConstraint('attempt >= 0', name=op.f('ck_jobs_attempt_not_negative')),
    sa.CheckConstraint('length(type) BETWEEN 1 AND 200', name=op.f('ck_jobs_type_length')),
    sa.CheckConstraint('max_attempts >= 1', name=op.f('ck_jobs_max_attempts_positive')),
    sa.CheckConstraint('priority BETWEEN 0 AND 9', name=op.f('ck_jobs_priority_range')),
    sa.CheckConstraint('progress IS NULL OR progress BETWEEN 0 AND 1', name=op.f('ck_jobs_progress_range')),
    sa.CheckConstraint('timeout_seconds IS NULL OR timeout_seconds > 0', name=op.f('ck_jobs_timeout_positive')),
    sa.ForeignKeyConstraint(['queue'], ['queues.name'], name=op.f('fk_jobs_queue_queues'), onupdate='CASCADE', ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_jobs_schedule_id_schedules'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    )
    op.create_index('ix_jobs_dispatched', 'jobs', ['queue', 'dispatched_at'], unique=False, postgresql_where=sa.text("state = 'dispatched'"))
    op.create_index('ix_jobs_finished', 'jobs', ['queue', 'finished_at'], unique=False, postgresql_where=sa.text("state IN ('succeeded', 'failed', 'cancelled')"))
    op.create_index('ix_jobs_runnable', 'jobs', ['queue', 'priority', 'run_at', 'id'], unique=False, postgresql_where=sa.text("state = 'queued'"))
    op.create_index('ix_jobs_running', 'jobs', ['queue', 'worker_id'], unique=False, postgresql_where=sa.text("state = 'running'"))
    op.create_index('ix_jobs_scheduled_due', 'jobs', ['run_at'], unique=False, postgresql_where=sa.text("state = 'scheduled'"))
    op.create_index('uq_jobs_schedule_fire', 'jobs', ['schedule_id', 'fire_time'], unique=True, postgresql_where=sa.text('schedule_id IS NOT NULL'))
    op.create_index('uq_jobs_unique_key_active', 'jobs', ['unique_key'], unique=True, postgresql_where=sa.text("unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed', 'cancelled')"))
    op.create_table('post_publications',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('post_id', sa.BigInteger(), nullable=False),
    sa.Column('social_account_id', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('platform_post_id', sa.Text(), nullable=True),
    sa.Column('publish_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'publishing', 'published', 'failed', 'needs_review')", name=op.f('ck_post_publications_state_valid')),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_post_publications_post_id_posts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['social_account_id'], ['social_accounts.id'], name=op.f('fk_post_publications_social_account_id_social_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_post_publications')),
    sa.UniqueConstraint('post_id', 'social_account_id', name=op.f('uq_post_publications_post_id_social_account_id'))
    )
    op.create_table('job_dependencies',
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('depends_on_id', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('job_id <> depends_on_id', name=op.f('ck_job_dependencies_not_self')),
    sa.ForeignKeyConstraint(['depends_on_id'], ['jobs.id'], name=op.f('fk_job_dependencies_depends_on_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_dependencies_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'depends_on_id', name=op.f('pk_job_dependencies'))
    )
    op.create_index('ix_job_dependencies_depends_on_id', 'job_dependencies', ['depends_on_id'], unique=False)
    op.create_table('job_executions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'running'"), nullable=False),
    sa.Column('worker_id', sa.Text(), nullable=True),
    sa.Column('task_id', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error_class', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('traceback', sa.Text(), nullable=True),
    sa.CheckConstraint("state IN ('running', 'succeeded', 'failed', 'snoozed', 'cancelled', 'discarded', 'timed_out', 'lost')", name=op.f('ck_job_executions_state_valid')),
    sa.CheckConstraint('finished_at IS NULL OR finished_at >= started_at', name=op.f('ck_job_executions_finished_after_start')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_executions_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_executions')),
    sa.UniqueConstraint('job_id', 'attempt', name=op.f('uq_job_executions_job_id_attempt'))
    )
    op.create_table('job_logs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('level', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.CheckConstraint("level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')", name=op.f('ck_job_logs_level_valid')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_logs_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_logs'))
    )
    op.create_index('ix_job_logs_job_id_id', 'job_logs', ['job_id', 'id'], unique=False)
    op.execute(CREATE_NOTIFY)


def downgrade() -> None:
    op.execute(DROP_NOTIFY)
    op.drop_index('ix_job_logs_job_id_id', table_name='job_logs')
    op.drop_table('job_logs')
    op.drop_table('job_executions')
    op.drop_index('ix_job_dependencies_depends_on_id', table_name='job_dependencies')
    op.drop_table('job_dependencies')
    op.drop_table('post_publications')
    op.drop_index('uq_jobs_schedule_fire', table_name='jobs')
    op.drop_index('uq_jobs_unique_key_active', table_name='jobs', postgresql_where=sa.text("unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed', 'cancelled')"))
    op.drop_index('ix_jobs_scheduled_due', table_name='jobs', postgresql_where=sa.text("state = 'scheduled'"))
    op.drop_index('ix_jobs_running', table_name='jobs', postgresql_where=sa.text("state = 'running'"))
    op.drop_index('ix_jobs_runnable', table_name='jobs', postgresql_where=sa.text("state = 'queued'"))
    op.drop_index('ix_jobs_finished', table_name='jobs', postgresql_where=sa.text("state IN ('succeeded', 'failed', 'cancelled')"))
    op.drop_index('ix_jobs_dispatched', table_name='jobs', postgresql_where=sa.text("state = 'dispatched'"))
    op.drop_table('jobs')
    op.drop_index('uq_telegram_connections_user_active', table_name='telegram_connections', postgresql_where=sa.text('is_active'))
    op.drop_table('telegram_connections')
    op.drop_table('social_accounts')
    op.drop_index('ix_schedules_next_fire_at', table_name='schedules', postgresql_where=sa.text('enabled'))
    op.drop_table('schedules')
    op.drop_index('ix_proxy_health_logs_proxy_id_checked_at', table_name='proxy_health_logs')
    op.drop_table('proxy_health_logs')
    op.drop_index('ix_proactive_messages_due', table_name='proactive_messages', postgresql_where=sa.text("state = 'pending'"))
    op.drop_table('proactive_messages')
    op.drop_index('ix_posts_due', table_name='posts', postgresql_where=sa.text("state = 'scheduled'"))
    op.drop_table('posts')
    op.drop_index('ix_workers_last_heartbeat_at', table_name='workers')
    op.drop_table('workers')
    op.drop_table('users')
    op.drop_table('queues')
    op.drop_table('queue_metrics')
    op.drop_table('proxies')
    op.drop_table('leases')
    op.drop_table('job_metrics')
