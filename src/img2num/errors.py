"""The project's error type: a user mistake that the CLI reports as one line."""


class Img2NumError(Exception):
    """Bad input from the user (a file, an option, a name).

    The message names the thing that is wrong and what was expected. The CLI prints it as one
    line on stderr and exits non-zero; anything else that escapes is a bug and keeps its traceback.
    """


class Img2NumWarning(UserWarning):
    """A result the user should look at: a trained model that barely beats predicting the mean."""
