"""The quickstart workload written the way Flower's PyTorch quickstart writes it
(flwr new ... PyTorch template, flwr 1.42 Message API): the ClientApp builds its model
and loads its partition with flwr-datasets on every call, wraps it in a DataLoader with
a transform, and trains; the server uses Flower's own FedAvg `strategy.start`.
Only the data source differs: the template downloads MNIST from the Hugging Face Hub,
here the same images come from an in-memory `datasets.Dataset` (no internet), cached
per process like the template caches its `FederatedDataset`.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch.utils.data import DataLoader

from fedft.ml.models import build_model

_pool = None  # like the template's `fds` cache: the partitioner, not the partitions


def _partitioner(num_partitions: int):
    global _pool
    if _pool is None:
        from datasets import Dataset
        from flwr_datasets.partitioner import IidPartitioner

        from fedft.ml.data.registry import load_dataset

        data = load_dataset("mnist-5k")
        n_train = int(len(data) * 0.8)
        part = IidPartitioner(num_partitions=num_partitions)
        part.dataset = Dataset.from_dict({"image": data.x[:n_train].reshape(n_train, -1).tolist(), "label": data.y[:n_train].tolist()})
        _pool = part
    return _pool


def load_data(partition_id: int, num_partitions: int, batch_size: int) -> tuple[DataLoader, DataLoader]:
    partition = _partitioner(num_partitions).load_partition(partition_id)
    split = partition.train_test_split(test_size=0.1, seed=42)

    def to_tensors(batch):
        batch["image"] = [torch.tensor(img, dtype=torch.float32).reshape(1, 28, 28) for img in batch["image"]]
        return batch

    split = split.with_transform(to_tensors)
    return (DataLoader(split["train"], batch_size=batch_size, shuffle=True),
            DataLoader(split["test"], batch_size=batch_size))


def Net() -> torch.nn.Module:  # noqa: N802  (the template's name)
    return build_model("seed_cnn", (1, 28, 28), 10)


def _train(net, loader, epochs: int, lr: float) -> float:
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    running = 0.0
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad()
            loss = loss_fn(net(batch["image"]), torch.as_tensor(batch["label"]))
            loss.backward()
            opt.step()
            running += loss.item()
    return running / max(1, len(loader) * epochs)


def _test(net, loader) -> tuple[float, float]:
    net.eval()
    loss_fn, loss, correct, n = torch.nn.CrossEntropyLoss(), 0.0, 0, 0
    with torch.no_grad():
        for batch in loader:
            out = net(batch["image"])
            y = torch.as_tensor(batch["label"])
            loss += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss / max(1, n), correct / max(1, n)


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    pid, n = context.node_config["partition-id"], context.node_config["num-partitions"]
    trainloader, valloader = load_data(pid, n, batch_size=32)
    _test(model, valloader)  # fedft's clients evaluate the received model too: same work
    loss = _train(model, trainloader, epochs=int(msg.content["config"]["local-epochs"]), lr=float(msg.content["config"]["lr"]))
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(trainloader.dataset)})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)
