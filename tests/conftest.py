import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and the suite stays immune to other processes on the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
