import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and the suite stays immune to other processes on the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def encoder():
    """The tiny random-weight encoder the extraction tests share (frozen: no test changes it)."""
    from cmdcl.extract.models import load_encoder

    return load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32", seed=0)
