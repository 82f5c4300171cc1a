"""DynamoDB: the call store (``store``), its item encoding (``codec``) and its clients (``clients``)."""
