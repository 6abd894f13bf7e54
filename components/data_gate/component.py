"""KFP definition of data_gate; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def data_gate(anomalies_found: bool, anomalies: Input[Artifact]) -> bool:
    """Fails the run when validation found blocking findings; everything after it then never runs.

    Drift reported between the policy's warn and block levels does not stop the run; the
    gate logs it.

    A separate lightweight step because container-component outputs cannot drive
    ``dsl.If`` under kfp.local, and because a failed run is what a platform engineer
    should see in the dashboard when a bad batch arrives.

    Args:
        anomalies_found: The ``anomalies_found`` output of validate_data.
        anomalies: The ``anomalies`` output of validate_data (its anomalies.json names each column).

    Returns:
        True: the data passed (the step fails otherwise, naming every split and column).
    """
    from components.data_gate import executor
    from components.lib import logs

    logs.setup()
    executor.check(anomalies_found, anomalies.path)
    return True
