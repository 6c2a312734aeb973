"""The currencies an order may be in: ISO 4217's current codes (list one,
as published by SIX, the maintenance agency, on 2026-01-01) that are money
with minor units. Left out, as the standard marks them "N.A." for minor
units: precious metals (XAU, XAG, XPD, XPT), units of account (XDR, XSU,
XUA, XBA-XBD), and XTS (testing) and XXX (no currency).

A kept list, not a pattern: ``[A-Z]{3}`` took ``ABC``. When ISO 4217 changes
(a few codes a year: ZWG in 2024, XCG in 2025), add the code here; a code
withdrawn stays until no stored order names it.
"""

ISO_4217 = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
    SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 -- a table to read, not a list of strings
)
