"""The only place with SQL: models, statements, the driver, migrations, and the store facade."""
