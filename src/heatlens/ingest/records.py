# Temporary: the data model moved to heatlens.model; removed once every import uses it.
from heatlens.model import *  # noqa: F403
