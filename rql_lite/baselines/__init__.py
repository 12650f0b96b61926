"""The other ways to train a flow policy with RL that the RQL paper compares against (its Section 2),
one module each, written against the same networks, chunked data and value ensemble as RQL:

* ``bc``: BC flow, flow matching on the data's chunks (no value);
* ``fql``: distillation into a one-step policy trained on the critic (FQL);
* ``ifql``: in-sample (IQL) values and rejection sampling among N flow samples (IFQL);
* ``fawac``: flow matching weighted by exp(beta * advantage) (FAWAC);
* ``fbrac``: the critic's gradient backpropagated through all K Euler steps (FBRAC).

Each module has ``init(config, key) -> (policy_params, value_params)``, ``critic_params(value_params)``
(what the target network tracks), ``draws(config, key, batch_size)`` (the update's random numbers),
``loss_at(config, params, target_params, batch, draws) -> (loss, metrics)`` and
``act_with(config, policy_params, value_params, obs, key) -> (B, D)``. ``rql_lite.agent`` trains and
acts with them like RQL; ``common`` holds what they share.
"""
from rql_lite.baselines import bc, common, fawac, fbrac, fql, ifql

__all__ = ["bc", "common", "fawac", "fbrac", "fql", "ifql"]
