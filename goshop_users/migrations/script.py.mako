"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Keep the previous release working: add before you drop, backfill in steps.
"""
<%
    # As `make lint` wants it, so an empty revision (migrate create) passes
    # as written: only the imports the body uses, and double quotes (revision
    # ids are digits, so no quote inside needs escaping).
    body = (upgrades or "") + (downgrades or "")
    wanted = [line for used, line in (("sa.", "import sqlalchemy as sa"), ("op.", "from alembic import op")) if used in body]
    if imports:
        wanted.append(imports)

    def literal(value):
        return repr(value).replace("'", '"')
%>\
% if wanted:

${"\n".join(wanted)}
% endif

revision = ${literal(up_revision)}
down_revision = ${literal(down_revision)}
branch_labels = ${literal(branch_labels)}
depends_on = ${literal(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
