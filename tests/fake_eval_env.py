"""Cheap gymnasium envs for tests/test_evaluate_many.py, made as ``"fake_eval_env:FakeReach-v0"``.

JAX-free: ``evaluate_many``'s worker processes import this module (gymnasium's "module:EnvId"
form) to make the env. Observations 28, actions 5, like cube-single, so one tiny agent fits both.

``FakeReach-v0``: the first five coordinates move with the action; the reward is continuous,
success comes and goes (``p[0] > 0.25``), the episode terminates at ``p[0] > 0.55`` and is
truncated after 45 steps. So outcomes, returns and lengths all depend on the policy's actions.
``FakeBroken-v0`` raises in its 7th step.
"""
import gymnasium
import numpy as np
from gymnasium import spaces


class FakeReach(gymnasium.Env):
    def __init__(self, fail_at_step=None):
        self.observation_space = spaces.Box(-np.inf, np.inf, (28,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (5,), np.float32)
        self.fail_at_step = fail_at_step
        self.p, self.t = np.zeros(28), 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.p, self.t = self.np_random.uniform(-0.3, 0.3, 28), 0
        return self.p.copy(), {}

    def step(self, action):
        self.t += 1
        if self.fail_at_step is not None and self.t >= self.fail_at_step:
            raise RuntimeError("FakeBroken failed on purpose")
        self.p[:5] += 0.1 * np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.p[5] += 0.01
        reward = float(-np.sum(self.p[:5] ** 2))
        return self.p.copy(), reward, bool(self.p[0] > 0.55), False, {"success": bool(self.p[0] > 0.25)}


for _name, _kwargs in (("FakeReach-v0", {}), ("FakeBroken-v0", {"fail_at_step": 7})):
    if _name not in gymnasium.registry:
        gymnasium.register(_name, entry_point=FakeReach, max_episode_steps=45, kwargs=_kwargs)
