"""The one exception a user should ever see: a paragraph that says what is wrong and what to do."""


class UserError(Exception):
    """Bad input (config, data file, checkpoint); printed as-is, without a traceback."""
