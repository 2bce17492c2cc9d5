"""The conductor: RPC endpoint (manager), node labelling (kube), enabled plugins, label audit.

``rpcapi`` is the client side and is what agents import; nothing here imports the agent.
"""
