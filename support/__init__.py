"""The support console, on top of every other app: the dashboard, the customer support page (a read model over
customers, agencies, wallets, payments, overdrafts and reconciliation) with its reason-required actions, and the
demo loader. Nothing below imports it."""
