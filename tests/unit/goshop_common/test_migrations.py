from goshop_common.db.migrations import sql_sections
from goshop_common.db.session import sqlalchemy_url


def test_goose_sections_are_split_into_up_and_down(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text(
        "-- a comment\n-- +goose Up\nCREATE TABLE t (id int);\n\n-- +goose Down\nDROP TABLE t;\n",
    )
    assert sql_sections(path) == {"up": "CREATE TABLE t (id int);", "down": "DROP TABLE t;"}


def test_a_file_without_down_has_an_empty_down(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text("-- +goose Up\nSELECT 1;\n")
    assert sql_sections(path) == {"up": "SELECT 1;", "down": ""}


def test_driver_free_urls_get_psycopg2_named():
    assert sqlalchemy_url("postgresql://u:p@h:1/d") == "postgresql+psycopg2://u:p@h:1/d"
    assert sqlalchemy_url("postgres://u:p@h:1/d") == "postgresql+psycopg2://u:p@h:1/d"
    assert sqlalchemy_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"
