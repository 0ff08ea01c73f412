"""abandoned S3 multipart uploads (an abort the store could not receive, retried by the sweep)

Revision ID: 53a300000001
Revises: a7b1c0de0001
Create Date: 2026-12-04 21:10:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "53a300000001"
down_revision = "a7b1c0de0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "envois_s3_abandonnes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=False),
        sa.Column("upload_id", sa.String(length=1024), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_envois_s3_abandonnes")),
        sa.UniqueConstraint("upload_id", name=op.f("uq_envois_s3_abandonnes_upload_id")),
    )


def downgrade():
    op.drop_table("envois_s3_abandonnes")
