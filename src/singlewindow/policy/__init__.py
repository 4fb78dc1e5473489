"""RCPT time: the Postfix policy daemon (SMTPD_POLICY_README).

Postfix asks, for every recipient on the MTA (I1) and MSA (I2) listeners, whether this
client may send this. ``codec`` reads and writes the wire format, ``decide`` holds the
decisions as plain functions over the store, ``server`` owns the socket.
"""
