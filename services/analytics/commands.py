"""``crm analytics <command>``: analytics' maintenance commands (``shared.cli`` finds them here)."""


def rebuild() -> None:
    """replay every topic from its start into ANALYTICS_DATABASE_URL and exit"""
    from services.analytics.rebuild import main  # on demand: the CLI imports this at start-up

    main()


COMMANDS = {"rebuild": rebuild}
