"""Ready-made tools. Offer them to an agent like your own.

Example:
    ```python
    from agentkit.tools import calculate

    class Helper(Agent):
        tools = [calculate]
    ```
"""

from agentkit.tools.arithmetic import calculate

__all__ = ["calculate"]
