"""frame tags: user-named tags of a project and the frames carrying them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('frame_tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_frame_tags_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_frame_tags')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_frame_tags_project_id_name'))
    )
    with op.batch_alter_table('frame_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_frame_tags_project_id'), ['project_id'], unique=False)

    op.create_table('frame_tag_items',
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.Column('frame_id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_frame_tag_items_frame_id_frames'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tag_id'], ['frame_tags.id'], name=op.f('fk_frame_tag_items_tag_id_frame_tags'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tag_id', 'frame_id', name=op.f('pk_frame_tag_items'))
    )
    with op.batch_alter_table('frame_tag_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_frame_tag_items_frame_id'), ['frame_id'], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('frame_tag_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_frame_tag_items_frame_id'))
    op.drop_table('frame_tag_items')
    with op.batch_alter_table('frame_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_frame_tags_project_id'))
    op.drop_table('frame_tags')
