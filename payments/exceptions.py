from disbalance.exceptions import InvalidState, NotFound


class ProductNotFound(NotFound):
    title = "Product not found"


class OperationNotFound(NotFound):
    title = "Not found"


class HoldNotHeld(InvalidState):
    title = "Hold is not held"


class RefundTooLarge(InvalidState):
    title = "Refund exceeds the charge"
