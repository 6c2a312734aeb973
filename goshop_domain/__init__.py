"""The shop's domain shapes that several services share: the event contract
(goshop_domain.events), money and currencies (goshop_domain.money,
goshop_domain.currencies) and the order as the APIs show it
(goshop_domain.orders). It stands between the kernel (goshop_common, which
knows no domain) and the services (.importlinter keeps it so)."""
