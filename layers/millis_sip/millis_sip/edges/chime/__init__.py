"""The Amazon Chime SDK SIP media application edge: invocation events in, call actions out."""
