"""Clouds through Apache Libcloud: the ``clouds:`` section of the inventory, the records
of their virtual machines, and the ``Cloud`` context (issue 18, in parts)."""
