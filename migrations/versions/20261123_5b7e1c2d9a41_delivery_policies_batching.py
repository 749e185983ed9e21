"""delivery policies: batching, when an endpoint was disabled, batch attempts

Revision ID: 5b7e1c2d9a41
Revises: 04f30502aa57
Create Date: 2026-11-23 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b7e1c2d9a41'
down_revision = '04f30502aa57'
branch_labels = None
depends_on = None


def upgrade():
    # Server defaults fill the rows that exist: batching off, nothing disabled yet.
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('batch_size', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('batch_window_seconds', sa.Double(), nullable=False, server_default='0'))

    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('batch_size', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('batch_size')
        batch_op.drop_column('batch_id')

    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_column('batch_window_seconds')
        batch_op.drop_column('batch_size')
        batch_op.drop_column('disabled_at')
