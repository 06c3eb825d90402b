from disbalance.exceptions import InvalidState, NotFound


class AgencyNotFound(NotFound):
    title = "Agency not found"


class AgencyExists(InvalidState):
    title = "Agency exists with other data"
