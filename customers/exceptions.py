from disbalance.exceptions import CustomerNotActive, InvalidState, NotFound, ValidationFailed


class CustomerNotFound(NotFound):
    title = "Customer not found"


class CustomerExists(InvalidState):
    title = "Customer exists with other data"


__all__ = ["CustomerExists", "CustomerNotActive", "CustomerNotFound", "ValidationFailed"]
