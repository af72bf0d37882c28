"""The ServerApp (`app`) and its round loop (`loop`): which node holds which client
(`nodes`), client sampling (`sampling`), sending and receiving (`exchange`), reply
screening (`validation`), failure logs (`node_log`), central evaluation
(`evaluation`) and text metrics (`text_metrics`)."""
