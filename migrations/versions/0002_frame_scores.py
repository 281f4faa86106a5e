"""frame scores

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('frame_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('frame_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('checkpoint_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_frame_scores_checkpoint_id_checkpoints'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_frame_scores_frame_id_frames'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_frame_scores_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_frame_scores'))
    )
    with op.batch_alter_table('frame_scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_frame_scores_frame_id'), ['frame_id'], unique=False)
        batch_op.create_index('ix_frame_scores_name_frame', ['name', 'frame_id'], unique=False)



def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('frame_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_frame_scores_name_frame')
        batch_op.drop_index(batch_op.f('ix_frame_scores_frame_id'))

    op.drop_table('frame_scores')
